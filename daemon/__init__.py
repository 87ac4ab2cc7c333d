"""storesync: keeps a store's ERP and its sales channels in step."""

__version__ = "0.1.0"
