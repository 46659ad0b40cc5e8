"""Charge cards through Stripe, store its webhooks, and push each event to websocket subscribers."""

__version__ = "0.1.0"
