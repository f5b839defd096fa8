"""Token conventions normalise to one answer, and the schemas modules' doctests run."""

from __future__ import annotations

import doctest
import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.schemas.normalize import Tokens, tokens_from_usage

counts = st.integers(min_value=0, max_value=2_000_000)


@settings(max_examples=300, deadline=None)
@given(fresh=counts, read=counts, write=counts, visible=counts, reasoning=counts)
def test_every_convention_gives_the_same_tokens(fresh, read, write, visible, reasoning):
    """The same request as OpenAI, Anthropic, LiteLLM and OpenRouter report it normalises identically."""
    expected = Tokens(fresh + read + write, read, write, visible + reasoning, reasoning)
    openai_chat = {"prompt_tokens": fresh + read + write, "completion_tokens": visible + reasoning,
                   "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
                   "completion_tokens_details": {"reasoning_tokens": reasoning}}
    openai_responses = {"input_tokens": fresh + read + write, "output_tokens": visible + reasoning,
                        "input_tokens_details": {"cached_tokens": read, "cache_creation_tokens": write},
                        "output_tokens_details": {"reasoning_tokens": reasoning}}
    anthropic = {"input_tokens": fresh, "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
                 "output_tokens": visible + reasoning, "reasoning_tokens": reasoning}
    litellm = {**openai_chat, "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
               "prompt_tokens_details": {"cached_tokens": read, "cache_creation_tokens": write}}
    openrouter = {**openai_chat, "cost": 0.1}
    for usage in (openai_chat, openai_responses, anthropic, litellm, openrouter):
        assert tokens_from_usage(usage) == expected, usage


def test_anthropic_without_cache_fields_is_plain():
    assert tokens_from_usage({"input_tokens": 10, "output_tokens": 3}) == Tokens(10, 0, 0, 3, 0)


MODULES = [
    "spendwatch.schemas.errors", "spendwatch.schemas.normalize", "spendwatch.schemas.pricing",
    "spendwatch.schemas.redact", "spendwatch.schemas.adapters", "spendwatch.schemas.adapters.canonical",
    "spendwatch.schemas.adapters.detect", "spendwatch.config", "spendwatch.schemas.event_window",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, name
