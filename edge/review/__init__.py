"""The review web app (`hootwatch review`): queues of detections and windows to label, audio, spectrograms and a
local JSON API. Needs the `[review]` extra (FastAPI, uvicorn, python-multipart); the rest of the edge does not."""
