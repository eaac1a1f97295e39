def my_function():
    print("original, not patched")
