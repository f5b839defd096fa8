"""One name per model, whichever gateway reported it.

The LiteLLM proxy routes ``openai/gpt-4o``, its SDK reports ``gpt-4o`` with the provider beside it,
OpenRouter says ``anthropic/claude-sonnet-4`` and nests further (``openrouter/openai/gpt-4o``).
Left as sent, the same model splits spend by model, the mix-drift baselines and the price tiers in
two. Every parsed event goes through :func:`split_provider` (in
:func:`spendwatch.schemas.adapters.parse_message`): known provider prefixes are taken off the model
and the outermost one becomes the provider when the gateway named none.
"""

from __future__ import annotations

#: Routing prefixes gateways put before a model name (LiteLLM's provider names and OpenRouter's vendors).
#: A prefix not listed here (``meta-llama/...``, ``accounts/fireworks/...``) is part of the model's own name.
PROVIDER_PREFIXES: frozenset[str] = frozenset({
    "openai", "text-completion-openai", "azure", "azure_ai", "azure_text", "anthropic", "bedrock",
    "bedrock_converse", "sagemaker", "vertex_ai", "vertex_ai_beta", "gemini", "google", "mistral", "mistralai",
    "cohere", "cohere_chat", "groq", "deepseek", "xai", "x-ai", "together_ai", "fireworks_ai", "perplexity",
    "openrouter", "deepinfra", "cerebras", "sambanova", "nvidia_nim", "databricks", "watsonx", "ollama",
    "ollama_chat", "hosted_vllm", "vllm", "lm_studio", "litellm_proxy", "custom_openai", "friendliai",
    "ai21", "replicate", "huggingface", "moonshot", "dashscope", "aws", "gcp.vertex_ai", "az.ai.openai",
})
#: Bedrock's route words (``bedrock/converse/<model>``): not part of the model either.
BEDROCK_ROUTES: frozenset[str] = frozenset({"converse", "invoke"})


def split_provider(model: str, provider: str | None) -> tuple[str, str | None]:
    """``(model, provider)`` with the provider prefixes taken off the model.

    The gateway's own provider is kept; otherwise the outermost prefix is the provider.

    >>> split_provider("openai/gpt-4o", None)
    ('gpt-4o', 'openai')
    >>> split_provider("gpt-4o", "openai")
    ('gpt-4o', 'openai')
    >>> split_provider("openai/gpt-4o", "openrouter")
    ('gpt-4o', 'openrouter')
    >>> split_provider("openrouter/anthropic/claude-sonnet-4", None)
    ('claude-sonnet-4', 'openrouter')
    >>> split_provider("bedrock/converse/anthropic.claude-3-5-sonnet-20240620-v1:0", None)
    ('anthropic.claude-3-5-sonnet-20240620-v1:0', 'bedrock')
    >>> split_provider("meta-llama/Llama-3.3-70B-Instruct", "together_ai")
    ('meta-llama/Llama-3.3-70B-Instruct', 'together_ai')
    >>> split_provider("openai/", None)  # nothing after the prefix: left as sent
    ('openai/', None)
    """
    rest = model
    outermost: str | None = None
    while "/" in rest:
        prefix, tail = rest.split("/", 1)
        word = prefix.strip().lower()
        if not tail.strip() or not (word in PROVIDER_PREFIXES or (outermost == "bedrock" and word in BEDROCK_ROUTES)):
            break
        outermost = outermost or word
        rest = tail.strip()
    if outermost is None:
        return model, provider
    return rest, provider or outermost
