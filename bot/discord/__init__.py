"""The Discord frontend (discord.py): slash commands, buttons and message-driven editing."""
