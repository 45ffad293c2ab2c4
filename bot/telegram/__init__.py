"""The Telegram frontend (python-telegram-bot): thin handlers over the conversation service."""
