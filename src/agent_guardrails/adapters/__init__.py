"""The adapters: LangGraph and LangChain ways in (``@guarded``, the ``create_agent``
middleware, the guarded ``ToolNode``, the guard node). They translate; they decide nothing."""
