from cwescan.cli import main

main()
