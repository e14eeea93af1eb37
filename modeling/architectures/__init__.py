"""One module per architecture: how to read its config from weight shapes, build it, and call it.

Each module holds plain functions that `modeling/families.py` puts into table rows; none of
them imports the table, so adding an architecture never touches the others.
"""
