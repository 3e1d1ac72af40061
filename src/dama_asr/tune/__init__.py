"""`dama tune`: the search space (space.py) and the resumable search on the dev split (search.py)."""
