"""Export a trained generator to ONNX, TorchScript or a shareable safetensors folder, and `python -m gan.export --help` says how."""

from gan.tools.export import main

if __name__ == "__main__":
    main()
