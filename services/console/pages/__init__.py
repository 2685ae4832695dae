"""The console's pages: one module per nav entry, each with its routes."""
