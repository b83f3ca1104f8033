"""The book: where its pages, parameter files and executed notebooks live (`layout`), the runner that executes
the notebooks with papermill and builds the site (`runner`, `python -m residual_lib.book`), the helpers a page
calls (`page`) and the provenance block every page carries.

Top layer, except `layout`, which only reads files and sits below the experiments that list the pages.
"""
