"""Billing: a balance per account, kept as a ledger of credits and debits."""
