from remotehands.cli.main import main

main()
