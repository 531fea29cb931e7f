"""What is neither a route nor a table: rules, crypto, throttles, delivery."""
