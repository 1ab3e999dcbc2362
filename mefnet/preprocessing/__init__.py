"""From a clip's frames to the network's input maps: face crop, optical flow and strain,
cached on disk per clip."""
