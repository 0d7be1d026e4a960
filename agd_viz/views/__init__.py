"""Page view-models: no streamlit, no torch (docs/architecture.md).

Plain inputs in, plain values out: every number a page shows is computed here, where it can be
tested without a browser.
"""
