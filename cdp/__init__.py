"""cdp: an event-sourced customer-data store for Fasttrack chat-center webhooks."""
