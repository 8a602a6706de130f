"""The built-in backends, one module each; `convbackends.dispatch` imports them lazily."""
