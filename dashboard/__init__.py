"""The ggvision dashboard: a Streamlit app (app.py, views/) over one data layer (data/) with an edge and a cloud
backend; access.py decides who may see it, media.py makes clips playable. docs/dashboard.md."""
