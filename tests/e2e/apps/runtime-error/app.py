print("loading the model from weights/model.bin", flush=True)
raise FileNotFoundError("weights/model.bin is missing")
