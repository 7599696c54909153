"""Probe data sets for dissection: the Broden format and plain image folders."""
