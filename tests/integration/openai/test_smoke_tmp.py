def test_smoke(sdk, raw):
    r = sdk.chat.completions.with_raw_response.create(model="groq:llama3-70b", messages=[{"role": "user", "content": "hi"}])
    print(r.headers)
    print(r.parse())
    s = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True})
    for c in s:
        print(c)
    print(raw.get("/v1/models").json())
