"""The dashboard's building blocks: the shared sidebar, cached reads of the store, Plotly figures, widgets and the
HTML report. The only part of pidcore that imports Streamlit or Plotly, and nothing else in pidcore imports it."""
