"""`cdp bench`: how fast this installation ingests, imports, rebuilds and answers."""
