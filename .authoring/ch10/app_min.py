from fastapi import FastAPI, HTTPException, UploadFile
app = FastAPI()
@app.get("/health")
def health(): return {"ok": True}
@app.post("/embed")
async def embed(file: UploadFile):
    data = await file.read()
    if not data: raise HTTPException(422, "empty image")
    return {"bytes": len(data)}
