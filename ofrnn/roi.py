"""ROI sequences: from per-frame LV boxes to the paper's 64x64 crop and back.

The heart localization layers (Sec. 2) hand the motion layers one 64x64 ROI sequence per slice.
One box serves the whole sequence (the motion features trace pixels through all frames, so the
crop must not move): the union of the per-frame LV boxes, grown by a margin and made square.
When that square is larger than 64 pixels (large or dilated hearts, fine pixels) the crop is
resampled down so the whole LV still fits; the paper's input size stays 64x64. A
:class:`RoiTransform` records the crop so predictions map back to image coordinates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

#: ROI side of the paper's motion layers (Sec. 2: "the input image ... of size 64 x 64")
ROI_SIZE = 64


@dataclass(frozen=True)
class RoiTransform:
    """A square crop of side ``side`` image pixels at (y0, x0), resampled to ``size`` x ``size``.

    ROI pixel (i, j) samples image point (y0 + (i + 0.5) * scale - 0.5, x0 + (j + 0.5) * scale - 0.5)
    with ``scale = side / size`` image pixels per ROI pixel.
    """

    y0: int
    x0: int
    side: int
    size: int = ROI_SIZE

    @property
    def scale(self):
        return self.side / self.size

    @property
    def box(self):
        """(y0, x0, y1, x1) in image pixels, half-open; may reach outside the image (padded)."""
        return (self.y0, self.x0, self.y0 + self.side, self.x0 + self.side)

    def to_dict(self):
        return asdict(self)

    def roi_to_image(self, yx):
        """Map ROI coordinates (..., 2) (y, x) to image coordinates."""
        yx = np.asarray(yx, dtype=float)
        return (yx + 0.5) * self.scale - 0.5 + np.array([self.y0, self.x0])

    def image_to_roi(self, yx):
        """Map image coordinates (..., 2) (y, x) to ROI coordinates."""
        yx = np.asarray(yx, dtype=float)
        return (yx - np.array([self.y0, self.x0]) + 0.5) / self.scale - 0.5


def sequence_transform(lv_box, *, margin=0.15, size=ROI_SIZE):
    """One square crop for a whole sequence from its per-frame LV boxes.

    Parameters
    ----------
    lv_box : array (T, 4) or (4,)
        (y0, x0, y1, x1) half-open boxes; rows of -1 (unannotated frames) are ignored.
    margin : float, keyword-only
        Fraction of the LV extent added on every side, so the myocardium and its surroundings
        (which the 11x11 patches of border pixels see) stay inside the crop.
    size : int, keyword-only
        Output side in pixels; the square is never smaller than this (no upsampling).

    Returns
    -------
    RoiTransform
    """
    boxes = np.atleast_2d(np.asarray(lv_box))
    boxes = boxes[np.all(boxes >= 0, axis=1)]
    if boxes.size == 0:
        raise ValueError("no annotated LV box to build a ROI from")
    y0, x0 = boxes[:, 0].min(), boxes[:, 1].min()
    y1, x1 = boxes[:, 2].max(), boxes[:, 3].max()
    extent = max(y1 - y0, x1 - x0)
    side = max(size, int(np.ceil(extent * (1 + 2 * margin))))
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    return RoiTransform(y0=int(round(cy - side / 2.0)), x0=int(round(cx - side / 2.0)), side=side, size=size)


def _sample_grid(t: RoiTransform):
    i = (np.arange(t.size) + 0.5) * t.scale - 0.5
    return t.y0 + i, t.x0 + i


def crop(image, transform: RoiTransform, *, order=1):
    """Crop (..., H, W) arrays to (..., size, size), edge-padded outside the image.

    ``order`` is the spline order: 1 for images, 0 for masks and labels. With ``side == size``
    the crop is an exact pixel copy.
    """
    image = np.asarray(image)
    t = transform
    if t.side == t.size:
        pad = _pad_amount(image.shape[-2:], t)
        if any(pad):
            padw = [(0, 0)] * (image.ndim - 2) + [(pad[0], pad[1]), (pad[2], pad[3])]
            image = np.pad(image, padw, mode="edge")
        ys, xs = t.y0 + pad[0], t.x0 + pad[2]
        return image[..., ys:ys + t.size, xs:xs + t.size].copy()
    gy, gx = _sample_grid(t)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    flat = image.reshape((-1,) + image.shape[-2:])
    out = np.stack([ndi.map_coordinates(f, [yy, xx], order=order, mode="nearest", prefilter=False) for f in flat])
    return out.reshape(image.shape[:-2] + (t.size, t.size)).astype(image.dtype, copy=False)


def _pad_amount(shape, t):
    H, W = shape
    return (max(0, -t.y0), max(0, t.y0 + t.side - H), max(0, -t.x0), max(0, t.x0 + t.side - W))


def crop_flow(flow, transform: RoiTransform):
    """Crop (..., 2, H, W) displacement fields (dy, dx) in image pixels to ROI pixels."""
    return crop(flow, transform, order=1) / transform.scale


def uncrop(roi_map, transform: RoiTransform, shape, *, order=1, fill=0):
    """Map a (size, size) ROI map back to an image of ``shape`` (H, W); ``fill`` outside the crop."""
    t = transform
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    ry = (yy - t.y0 + 0.5) / t.scale - 0.5
    rx = (xx - t.x0 + 0.5) / t.scale - 0.5
    inside = (ry > -0.5) & (ry < t.size - 0.5) & (rx > -0.5) & (rx < t.size - 0.5)
    out = ndi.map_coordinates(np.asarray(roi_map, dtype=float), [ry, rx], order=order, mode="nearest",
                              prefilter=False)
    out[~inside] = fill
    return out.astype(np.asarray(roi_map).dtype, copy=False)
