from claude_cage.cli import main

main()
