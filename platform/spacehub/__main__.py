from spacehub.cli import main

main()
