from libs.codegen import main

if __name__ == "__main__":
    main()
