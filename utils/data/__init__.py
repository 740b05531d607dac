"""Small assets that ship with the package (with the scripts that made them in scripts/)."""
