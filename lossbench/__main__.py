from lossbench.app import main

main()
