"""Pure notice logic: subscriptions and filters, matching, summaries, stored shapes, tokens."""
