"""The review loop: the web app (`hootwatch review`: queues of detections and windows to label, audio,
spectrograms and a local JSON API) and its server, labels in and out (label_io), the threshold from the labels
(calibrate) and a training set from them (dataset). Only app.py and server.py need the `[review]` extra (FastAPI,
uvicorn, python-multipart)."""
