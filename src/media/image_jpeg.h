/*
 * image_jpeg.h — JPEG decoding through libjpeg-turbo, at a DCT-reduced
 * scale, streamed from the file. Internal to image.c: callers use image.h.
 */
#ifndef PV_IMAGE_JPEG_H
#define PV_IMAGE_JPEG_H

#include <stddef.h>
#include <stdint.h>

struct AVFrame;

/* The most scans a JPEG may have (libjpeg's djpeg -maxscans idea): each
 * progressive scan walks every block, so thousands of tiny ones make a
 * small file that decodes for minutes. */
#define PV_JPEG_MAX_SCANS 1000

/*
 * Decode the JPEG read from fd (from offset 0) at 1/2^shift of its size
 * (shift 0..3: libjpeg's scale_denom 1, 2, 4, 8 — the IDCT itself makes
 * the smaller picture, so most of the work and memory of a full decode is
 * never spent) into a new AV_PIX_FMT_RGB24 frame, or AV_PIX_FMT_GRAY8 for
 * a one-component file. The file is read through a 64 KB buffer: memory
 * is the output, libjpeg's row buffers and, for progressive or
 * multi-scan files, the whole image's coefficients at full size (image.c
 * estimates it from the frame header). Every libjpeg warning is an error (truncated data,
 * a bad Huffman code, a missing EOI), as FFmpeg's AV_EF_EXPLODE made it.
 * Returns 0; -EINVAL (err says why, for the user), -ENOMEM or -EIO.
 */
int pv_jpeg_decode(int fd, int shift, struct AVFrame **out, char *err, size_t errlen);

#endif
