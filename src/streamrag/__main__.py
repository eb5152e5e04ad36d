from streamrag.cli import main

main()
