"""Image data: data set specs, the array and image-file formats, prepared stores on disk,
batches as model inputs, and bits/dim over a whole data set."""
