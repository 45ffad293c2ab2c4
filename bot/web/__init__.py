"""The local web chat: a browser frontend on the conversation service."""
