import time, os
from PIL import Image, ImageDraw, ImageFont
import pytesseract
font = ImageFont.truetype("DejaVuSans.ttf", 14)
def page(n_lines, w=480, h=640):
    img = Image.new("L", (w, h), 255); d = ImageDraw.Draw(img)
    for k in range(n_lines): d.text((10, 10 + 22 * k), f"Item {k}: small blue square, price {10+k} euros", fill=0, font=font)
    return img
for cfg in ("", "--psm 6", "--psm 6 --oem 1"):
    img = page(25)
    pytesseract.image_to_string(img, config=cfg)
    t = time.perf_counter()
    for _ in range(3): txt = pytesseract.image_to_string(img, config=cfg)
    print(repr(cfg), f"{(time.perf_counter()-t)/3:.2f} s/page", txt.split("\n")[0])
