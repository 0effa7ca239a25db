"""harmony.cli: thin typer commands. They parse flags, call the library and print; library errors name
fields and the CLI maps them to flags. The top layer: it may import every other.
"""
