"""The neutral core: the types and helpers every other part of embcc shares, importing none of them.

errors (EmbccError), spec (ModelSpec, Task), lora (LoraSet, the adapter math), adapted (the adapt step's
graph), bundle (a loaded checkpoint), files (staging, locking, hashing), onnxfile (saving ONNX graphs),
images (the one image preprocessing step), probe_images (generated probe images and caption/image pairs).
"""
