"""spendwatch: watches LLM gateway spend and pages the owner."""
__version__ = "0.1.0"
