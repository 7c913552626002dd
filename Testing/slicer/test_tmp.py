import sys
def test_a():
    import conftest
    print(conftest.__file__, sorted(k for k in sys.modules if "conftest" in k))
