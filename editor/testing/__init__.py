"""Test doubles and tiny random-weight models. Production code never imports this package."""
