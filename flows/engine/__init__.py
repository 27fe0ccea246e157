"""The engine that drives one OUT: each row through submit, wait and download, within the budget."""
