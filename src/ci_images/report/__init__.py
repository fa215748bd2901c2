"""What a run leaves behind for people and machines: the table and GitHub summary, the lock file, README's table of
references, and the files written whole."""
