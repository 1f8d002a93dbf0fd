"""The reference engine: pure Python, the same files, behaviour and errors as the native engine.

It is the oracle of the test suite and the baseline of the benchmarks: an honest, reasonably
efficient implementation (struct, bisect, os.pread, the crc32c/lz4/cramjam packages), never slowed
down to flatter a ratio. Module names mirror native/src/*.rs.
"""
