"""One module per verb of `python -m solver <verb>`: each parses its flags in main(argv) and calls one stage.

The dispatcher (solver/__main__.py) imports only the module of the verb it runs. new_competition, like this file,
imports only the standard library at module level: the template's post-generation hook runs it before the
repository's dependencies are installed.
"""
