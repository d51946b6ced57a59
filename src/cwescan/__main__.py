from cwescan.cli import main

# Guarded: worker processes (spawn) import this module and must not run the CLI again.
if __name__ == "__main__":
    main()
