"""Generation: N candidate responses per prompt from a chat backend, and the pairs among them."""
