// Stroke masks: an off-screen canvas per stroke, encoded as the recipe's bit-packed base64 bitmap.

export function createMaskCanvas(side) {
  const canvas = document.createElement("canvas");
  canvas.width = side;
  canvas.height = side;
  return canvas;
}

// Draw a round dab or a segment between two points (mask coordinates), so fast drags leave no gaps.
export function paintSegment(canvas, from, to, radius) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = "#fff";
  ctx.lineCap = "round";
  ctx.lineWidth = radius * 2;
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(to.x, to.y, radius, 0, Math.PI * 2);
  ctx.fill();
}

// canvas -> {width, height, data}: alpha > 0 is "on"; bits packed MSB first, row-major (numpy.packbits).
export function encodeMask(canvas) {
  const { width, height } = canvas;
  const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  const bytes = new Uint8Array(Math.ceil((width * height) / 8));
  for (let i = 0; i < width * height; i++) {
    if (pixels[i * 4 + 3] > 0) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return { width, height, data: btoa(binary) };
}

export function decodeMask(mask) {
  const canvas = createMaskCanvas(mask.width);
  canvas.height = mask.height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(mask.width, mask.height);
  const binary = atob(mask.data);
  for (let i = 0; i < mask.width * mask.height; i++) {
    if (binary.charCodeAt(i >> 3) & (0x80 >> (i & 7))) {
      image.data[i * 4] = image.data[i * 4 + 1] = image.data[i * 4 + 2] = image.data[i * 4 + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

// Paint a mask onto a display canvas in a colour (for overlays and thumbnails).
export function tintMask(target, mask, color, alpha = 0.55) {
  const ctx = target.getContext("2d");
  const tmp = createMaskCanvas(mask.width);
  tmp.height = mask.height;
  const tctx = tmp.getContext("2d");
  tctx.drawImage(mask, 0, 0);
  tctx.globalCompositeOperation = "source-in";
  tctx.fillStyle = color;
  tctx.fillRect(0, 0, tmp.width, tmp.height);
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, target.width, target.height);
  ctx.restore();
}
