from kehu.marketing.views import segments

app_name = "marketing"

urlpatterns = [*segments.urlpatterns]
