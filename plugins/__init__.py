"""Built-in plugins: every module or package here is loaded like a dropped-in plugin.

Each imports only `hub`'s public surface, never another plugin.
"""
