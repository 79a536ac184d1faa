"""Pure delivery logic: no I/O, no clocks of its own, no project imports.

Everything here is a function over plain data, so it is tested with plain data.
"""
